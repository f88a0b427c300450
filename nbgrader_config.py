"""nbgrader course configuration: source/ -> release/ -> submitted/ -> autograded/.

Run nbgrader (or `tito`) from the repository root; that is the course root.
"""
import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by nbgrader)
COURSE_ROOT = Path(__file__).resolve().parent

c.CourseDirectory.course_id = "tinytorch-optimization"


def _exchange_set_elsewhere() -> bool:
    """Whether another Jupyter config file (a hub's /etc/jupyter/nbgrader_config.py,
    ~/.jupyter/...) sets Exchange.root: this file is read last and would override it."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    for folder in jupyter_config_path():
        if Path(folder).resolve() == COURSE_ROOT:
            continue
        for loader, name in ((PyFileConfigLoader, "nbgrader_config.py"), (JSONFileConfigLoader, "nbgrader_config.json")):
            if (Path(folder) / name).is_file():
                try:
                    found = loader(name, path=folder).load_config()
                except Exception:  # a broken file is nbgrader's to report
                    continue
                if "root" in found.get("Exchange", {}):
                    return True
    return False


# nbgrader's exchange (release_assignment, fetch, submit, collect, the Assignment List and
# Formgrader's Release/Collect buttons). Its default, /usr/local/share/nbgrader/exchange, is
# not writable for an ordinary user, so on one machine (`make lab`, `make lab-instructor`)
# the course uses its own git-ignored folder exchange/, and students' Assignment List fetches
# into workspace/ (where `tito module start` puts notebooks). A JupyterHub sets Exchange.root
# for everyone in /etc/jupyter/nbgrader_config.py (README, "Running a class on JupyterHub"):
# then this file leaves the exchange alone. TITO_EXCHANGE=/path picks another folder.
if os.environ.get("TITO_EXCHANGE") or not _exchange_set_elsewhere():
    c.Exchange.root = os.environ.get("TITO_EXCHANGE") or str(COURSE_ROOT / "exchange")
    c.Exchange.assignment_dir = str(COURSE_ROOT / "workspace")
    # nbgrader's lists (Formgrader, the Assignment List) need the folder to exist; only
    # release_assignment would create it.
    for folder in (c.Exchange.root, c.Exchange.assignment_dir):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            pass  # nbgrader says the exchange is unwritable, naming the folder
    # The modes nbgrader's Release wants (777; sticky is not compared, and keeps anyone from removing
    # another's files): made right here, so Release neither warns that they are invalid nor changes them.
    try:
        if os.stat(c.Exchange.root).st_uid == os.geteuid() and os.stat(c.Exchange.root).st_mode & 0o777 != 0o777:
            os.chmod(c.Exchange.root, 0o1777)
    except OSError:
        pass

# Formgrader's Generate (and `nbgrader generate_assignment`) reads source/NN/NN.ipynb;
# the instructor edits source/NN/NN.py. This hook rebuilds the .ipynb from the .py first
# (tito/hooks.py), so Generate always releases the current .py. A string, not a function:
# Formgrader shows and serializes this configuration.
c.GenerateAssignment.pre_convert_hook = "tito.hooks.build_before_generate"

# The release's stubs name their module, task and function (tito.hooks.NameStubs, right after
# nbgrader's ClearSolutions), as the student's export does: an unfinished task in the notebook
# says which one it is. nbgrader's default list otherwise; strings, as for the hook above.
c.GenerateAssignment.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter", "nbgrader.preprocessors.InstantiateTests",
    "nbgrader.preprocessors.LockCells", "nbgrader.preprocessors.ClearSolutions", "tito.hooks.NameStubs",
    "nbgrader.preprocessors.ClearOutput", "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums", "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests", "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums", "nbgrader.preprocessors.CheckCellMetadata",
]

# source/NN_name/ holds the jupytext .py with the solutions: never release it.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]

# The gradebook is nbgrader's default: <course root>/gradebook.db (git-ignored).

# A cell that runs longer than this is stopped and graded as an error.
c.Execute.timeout = 120
# A kernel that dies or stops answering (os._exit, swallowed KeyboardInterrupt)
# must cost that cell its points, not abort the whole notebook without feedback.
c.Execute.raise_on_iopub_timeout = False
c.Execute.iopub_timeout = 10

# A cell that runs longer than Execute.timeout is stopped; a notebook that runs longer than
# this in all (say 20 cells of 110 s) gets "notebook time limit reached" in the running cell
# and its later cells are not run, so the next student is not kept waiting (a module's
# reference runs in under 60 s).
c.SafeExecute.notebook_timeout = 600
# What the graded notebook keeps of a cell's outputs, and of all of them (bytes of text): the
# rest is dropped as it arrives, with one line saying where it was cut, so a submission that
# prints a gigabyte makes neither nbgrader nor the notebook nor the feedback HTML big.
c.SafeExecute.cell_output_bytes = 1 << 20
c.SafeExecute.notebook_output_bytes = 10 << 20

# nbgrader sets no memory limit: each grading sandbox gets this much memory as a whole (a
# memory cgroup: a kernel and all its children together; where none can be made, the log says
# so), and each of its processes this much address space (RLIMIT_AS), so a runaway allocation
# raises MemoryError in that cell or kills the kernel (KernelDied) instead of taking the
# grading machine down. Override with --SandboxedKernelManager.memory_bytes=N if a module needs more.
KERNEL_MEMORY_BYTES = 8 << 30
c.SandboxedKernelManager.memory_bytes = KERNEL_MEMORY_BYTES
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:"]

# A kernel that dies (os._exit, segfault, out of memory) costs the cells from
# there on, instead of dropping the whole submission (see tito/safe_execute.py).
# And every grading kernel runs in a bubblewrap sandbox (see tito/sandbox.py):
# student code sees its own working copy (a 256 MiB tmpfs), the Python
# environment and tinytorch_lib read-only, a private /tmp, no network and
# nothing else of the course (no gradebook.db, submitted/, source/, release/);
# it runs as an unprivileged uid limited to 256 processes, and every process it
# starts dies with the kernel. nbgrader writes the gradebook after the kernel
# is gone. Needs `bwrap` (apt-get install bubblewrap); without it grading
# refuses to run, unless TITO_NO_SANDBOX=1 in the environment (`tito grade
# --no-sandbox`) accepts running student code with your own rights.
# Sizes: --SandboxedKernelManager.work_bytes / tmp_bytes / max_processes.
# Importable names, not class objects: Formgrader shows (and serializes) this configuration.
# nbgrader's own autograde list, with SandboxedExecute in place of nbgrader.preprocessors.Execute
# (tests/test_lab.py checks the list still matches nbgrader's default).
try:
    import tito.sandbox_kernel  # noqa: F401
except ImportError as error:
    # traitlets would log this and grade with stock nbgrader: unsandboxed. Stop instead.
    raise SystemExit(f"nbgrader_config.py: cannot import tito ({error}): run nbgrader from the "
                     "course's environment (.venv/bin/nbgrader, after `make test` or `make run`)") from None

# A submission folder holding a symbolic link, fifo or device is refused before nbgrader reads
# anything in it (tito/safe_autograde.py): nbgrader builds its Autograde class by name, so this
# puts tito's subclass in its place; the other students are graded as usual.
import tito.safe_autograde  # noqa: E402

tito.safe_autograde.install()

# nbgrader collect: a submission filed under another student's name (its files owned by another
# OS user) or holding links or special files is refused, unread; each student's latest acceptable
# submission is collected (tito/exchange.py). Student ids are OS user names; map others with
# c.SafeExchangeCollect.owners = {"student id": "os user"} or .owner_name = "{student}".
c.ExchangeFactory.collect = "tito.exchange.SafeExchangeCollect"
# The student's side (tito/student_exchange.py): submit lists no ".ipynb_checkpoints/...: EXTRA" (the copy
# leaves it out anyway); Fetch Feedback before any is released logs one warning, not an ExchangeError, and the
# Assignment List says "(no feedback released yet)" next to such a submission.
c.ExchangeFactory.submit = "tito.student_exchange.Submit"
c.ExchangeFactory.fetch_feedback = "tito.student_exchange.FetchFeedback"
c.ExchangeFactory.list = "tito.student_exchange.List"

# Each locked cell of a submission is put back from the gradebook (nbgrader's OverwriteCells), which logs
# "Attribute 'checksum' for cell ... has changed!" for an edited one; tito's OverwriteCells logs a cell of an
# earlier release (a test cell changed after the student got the assignment) as such, not as an edit
# (tito/safe_autograde.py). nbgrader's sanitize list otherwise.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput", "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec", "tito.safe_autograde.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# OutsideChecks: each test cell also scores on its module's check in source/NN/checks.py, run on the
# student's exported cells in a sandboxed process of its own and compared here (tito/checks.py):
# what the student's code does inside the kernel cannot change that half of the grade.
c.Autograde.autograde_preprocessors = [
    "tito.sandbox_kernel.SandboxedExecute",
    "tito.checks.OutsideChecks",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
    # Last, after SaveAutoGrades scored the real outputs: the autograded notebook that formgrader
    # and the feedback HTML show keeps nothing that could run in the instructor's browser
    # (student markdown cleaned with nh3, script/HTML/SVG/widget outputs, attachments, metadata).
    "tito.sanitize.SanitizeSubmission",
]
# The feedback HTML allows no script and no request (a Content-Security-Policy <meta>);
# formgrader's submission pages get one from the tito.formgrader_csp server extension (lab/instructor).
c.GenerateFeedback.exporter_class = "tito.sanitize.FeedbackExporter"

# Test cells a student deleted come back from the source before grading.
c.OverwriteCells.add_missing_cells = True

# nbgrader scores a test cell with any stderr output as 0. Warnings (numpy
# RuntimeWarning, DeprecationWarning) and progress bars (tqdm) go to stderr:
# drop stderr from graded cells before scoring, so neither can zero a correct
# answer. A failing test raises, which is an "error" output, so it still scores 0.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"[\s\S]"  # any stderr text
