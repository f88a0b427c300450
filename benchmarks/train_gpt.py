"""Train the course's character-level GPT on data/corpus.txt with tinytorch_lib's own autograd and Adam.

    python -m benchmarks.train_gpt --measure 5     # time 5 training steps and stop (to pick --steps)
    python -m benchmarks.train_gpt                 # the shipped recipe, writes data/gpt_corpus.npz
    make gpt                                       # the same

The recipe: GPT(vocab, d_model 128, 4 heads, 2 layers, context 256, max_len 1024),
seed 0, random windows of 257 characters from the training split (the first
90% of the corpus), each batch placed at a random position offset in
[0, 1024 - 256] so that every row of the positional table is trained, batch 16, Adam with a linear warm-up and cosine decay,
gradients clipped to a global norm of 1, one BLAS thread (the machine is
shared: with two threads a step waits for the busy core). Every figure it
prints is measured in this run: validation loss on the whole validation
split (the last 10%) against the unigram baseline of the same characters,
training time, parameter count and bytes, and a generated sample.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from tinytorch_lib import data_dir
from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import Adam
from tinytorch_lib.tensor import no_grad
from tinytorch_lib.timing import blas_threads
from tinytorch_lib.tokenization import CharTokenizer, load_corpus
from tinytorch_lib.training import progress_wanted
from tinytorch_lib.transformer import GPT, GPT_FILE, generate, save_gpt

ARCH = {"d_model": 128, "n_heads": 4, "n_layers": 2, "context": 256, "max_len": 1024}
PROMPT = "And the LORD said unto Moses, "


def batch(ids: np.ndarray, size: int, length: int, rng: np.random.Generator) -> tuple:
    """`size` random windows of length + 1 ids -> inputs (size, length), targets (size, length), int64."""
    starts = rng.integers(0, len(ids) - length - 1, size)
    windows = np.stack([ids[s:s + length + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]


def evaluate_loss(model: GPT, ids: np.ndarray, length: int, batch_size: int = 16, limit: int | None = None) -> tuple:
    """Mean cross-entropy (nats/char) over consecutive windows of `ids` -> (loss, targets scored as an array)."""
    n_windows = (len(ids) - 1) // length
    if limit is not None:
        n_windows = min(n_windows, limit)
    total, targets = 0.0, []
    with no_grad():
        for start in range(0, n_windows, batch_size):
            idx = range(start, min(start + batch_size, n_windows))
            w = np.stack([ids[i * length:i * length + length + 1] for i in idx])
            logits = model(w[:, :-1]).data.astype(np.float64)
            z = logits - logits.max(-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
            total += -np.take_along_axis(logp, w[:, 1:, None], axis=-1).sum()
            targets.append(w[:, 1:].ravel())
    targets = np.concatenate(targets)
    return total / targets.size, targets


class ShiftPositions:
    """A cache-seam object that caches nothing: the window's first position becomes `offset`.

    GPT.forward starts positions at cache.get_seq_length(0); update() hands the keys and values
    straight back, so attention is the ordinary causal attention over the window. Training windows
    at random offsets in [0, max_len - context] puts every row of the sinusoidal table (0..1023)
    in training, so the weights still make text at positions past the 256-token training context.
    """

    def __init__(self, offset: int):
        self.offset = int(offset)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.offset

    def update(self, k, v, layer_idx: int):
        return k, v


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to peak / 10."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def clip_gradients(params, max_norm: float) -> float:
    """Scale every .grad so their global L2 norm is at most max_norm; returns the norm before clipping."""
    norm = math.sqrt(sum(float((p.grad.data.astype(np.float64) ** 2).sum()) for p in params if p.grad is not None))
    if norm > max_norm:
        for p in params:
            if p.grad is not None:
                p.grad.data *= max_norm / norm
    return norm


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=ARCH["context"], help="training window (tokens)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads")
    p.add_argument("--eval-every", type=int, default=200, help="steps between validation estimates (32 windows)")
    p.add_argument("--no-shift", dest="shift", action="store_false",
                   help="train every window at positions 0..context-1 (default: a random offset per batch)")
    p.add_argument("--measure", type=int, default=0, metavar="N", help="time N steps, print, and stop")
    p.add_argument("--out", default=None, help=f"output file (default data/{GPT_FILE})")
    args = p.parse_args(argv)
    from tqdm.auto import tqdm

    train_text, val_text = load_corpus("train"), load_corpus("val")
    tok = CharTokenizer(train_text)
    train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)
    model = GPT(tok.vocab_size, **dict(ARCH, context=args.context), rng=args.seed)
    params = model.parameters()
    n_params = sum(q.size for q in params)
    print(f"corpus: {len(train_ids):,} train / {len(val_ids):,} val characters, vocabulary {tok.vocab_size}; "
          f"GPT {model.config()}: {n_params:,} parameters; batch {args.batch} x {args.context}, "
          f"{args.threads} BLAS thread(s)", flush=True)
    opt = Adam(params, lr=args.lr)
    loss_fn = CrossEntropyLoss()
    rng = np.random.default_rng(args.seed)
    steps = args.measure or args.steps
    history = {"step": [], "train_loss": [], "val_loss_estimate": []}
    smooth = None
    with blas_threads(args.threads):
        start = time.perf_counter()
        bar = tqdm(range(steps), desc="training GPT", unit="step", disable=not progress_wanted())
        for step in bar:
            opt.lr = lr_at(step, steps, args.lr, args.warmup)
            x, y = batch(train_ids, args.batch, args.context, rng)
            opt.zero_grad()
            shift = ShiftPositions(rng.integers(0, model.max_len - args.context + 1)) if args.shift else None
            loss = loss_fn(model(x, cache=shift).reshape(-1, tok.vocab_size), y.reshape(-1))
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"train_gpt: the loss is {value} at step {step}: lower --lr")
            loss.backward()
            clip_gradients(params, 1.0)
            opt.step()
            smooth = value if smooth is None else 0.95 * smooth + 0.05 * value
            bar.set_postfix(loss=f"{smooth:.3f}", lr=f"{opt.lr:.1e}")
            if not args.measure and ((step + 1) % args.eval_every == 0 or step + 1 == steps):
                est, _ = evaluate_loss(model, val_ids, args.context, limit=32)
                history["step"].append(step + 1)
                history["train_loss"].append(round(smooth, 4))
                history["val_loss_estimate"].append(round(est, 4))
                bar.write(f"step {step + 1}: train loss (smoothed) {smooth:.3f}, val loss (32 windows) {est:.3f}, "
                          f"{time.perf_counter() - start:.0f} s")
        seconds = time.perf_counter() - start
        if args.measure:
            print(f"{steps} steps in {seconds:.1f} s: {seconds / steps:.2f} s per step "
                  f"-> {args.steps} steps would take about {seconds / steps * args.steps / 60:.0f} min")
            return 0
        val_loss, targets = evaluate_loss(model, val_ids, args.context)
        freq = np.bincount(train_ids, minlength=tok.vocab_size) / len(train_ids)
        unigram = float(-np.log(freq[targets]).mean())
        long_loss, long_targets = evaluate_loss(model, val_ids, model.max_len, batch_size=2)
        sample = tok.decode(generate(model, tok.encode(PROMPT), 300, temperature=0.8, top_k=10, seed=0))
    meta = {"seed": args.seed, "steps": steps, "batch_size": args.batch, "context": args.context,
            "optimizer": "Adam", "lr": args.lr, "warmup": args.warmup, "schedule": "linear warm-up, cosine to lr/10",
            "grad_clip": 1.0, "blas_threads": args.threads, "train_seconds": round(seconds, 1),
            "parameters": n_params, "val_loss": round(val_loss, 4), "unigram_val_loss": round(unigram, 4),
            "val_characters_scored": int(targets.size),
            "val_loss_1024_windows": round(long_loss, 4), "position_shift": args.shift, "history": history,
            "command": "python -m benchmarks.train_gpt " + " ".join(argv if argv is not None else __import__("sys").argv[1:])}
    target = args.out or data_dir() / GPT_FILE
    size = save_gpt(target, model, tok, meta)
    print(f"validation loss {val_loss:.4f} nats/char on {targets.size:,} characters; unigram baseline of the same "
          f"split {unigram:.4f}; uniform ln({tok.vocab_size}) = {math.log(tok.vocab_size):.4f}")
    print(f"validation loss over windows of {model.max_len} (positions 0..{model.max_len - 1}): {long_loss:.4f} "
          f"nats/char on {long_targets.size:,} characters")
    print(f"training time {seconds / 60:.1f} min ({seconds / steps:.2f} s per step, {args.threads} BLAS thread(s)); "
          f"{n_params:,} parameters; wrote {target} ({size:,} bytes)")
    print(f"sample (temperature 0.8, top-k 10, seed 0):\n{sample}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
