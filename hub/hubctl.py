"""Set up and start a JupyterHub for the course on one host (as root): `make hub` and tests/test_hub.py.

    python hub/hubctl.py --users "alice bob" --instructor prof [--port 8000] [--state /srv/tinytorch-hub]

What it makes (every step is skipped when already done):

  STATE/env/              the users' Python environment: the course's pins (constraints.txt) minus the
                          test and browser packages, plus jupyterhub (jupyterhub-singleuser); no tito and
                          no tinytorch_lib in it. Built from a Python every user can run (/usr/bin/python3.11:
                          a pyenv Python under /root is not).
  STATE/kit/              the student kit (`tito kit`): each student's server starts on a copy of it in
                          their home (~/tinytorch, made by the hub's pre-spawn hook, jupyterhub_config.py).
  STATE/jupyter/          the two Jupyter setups (student, instructor) and the exchange's nbgrader config.
  /srv/nbgrader/exchange  nbgrader's exchange, mode 1777 (nbgrader wants 777; sticky: nobody removes
                          another's files), made right here so Release never "fixes" it.
  OS users                one per student and the instructor (useradd -m, home mode 700), with a random
                          password printed once (PAM login on the hub's page).
  ~INSTRUCTOR/tinytorch   the instructor's course directory: a clone of this repository, mode 700.

Then runs `jupyterhub -f hub/jupyterhub_config.py` on 127.0.0.1 until Ctrl+C.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HUB = Path(__file__).resolve().parent
REPO = HUB.parent
COURSE_ID = "tinytorch-optimization"  # nbgrader_config.py
EXCHANGE = Path("/srv/nbgrader/exchange")
STATE = Path("/srv/tinytorch-hub")
# Packages of the course's pins that a hub user does not need (tests, browser, lecture Voila).
NOT_FOR_USERS = {"hypothesis", "pytest-xdist", "playwright", "voila"}
# Pins of constraints.txt that need a newer Python than Debian 12's 3.11.2 (the users' Python), and the
# newest release that runs there. (soupsieve, via nbconvert's beautifulsoup4: HTML export only.)
FOR_OLDER_PYTHON = {"soupsieve": "2.8.3"}


def user_python() -> str:
    """A Python 3.11 that every OS user can execute (its whole path readable by others)."""
    for candidate in (os.environ.get("HUB_PYTHON"), "/usr/bin/python3.11", shutil.which("python3.11")):
        if candidate and Path(candidate).exists() and _world_readable(Path(candidate).resolve()):
            return candidate
    raise SystemExit("hub: no Python 3.11 that other users can run (apt-get install python3.11 python3.11-venv, "
                     "or HUB_PYTHON=/path)")


def _world_readable(path: Path) -> bool:
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & (0o001 if part != path else 0o005):
            return False
    return True


def user_packages() -> list[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if d.split("==")[0] not in NOT_FOR_USERS]


def build_env(env: Path) -> Path:
    """The users' environment (module docstring); rebuilt when the pins change."""
    packages = user_packages()
    constraints = "".join(f"{line.split('==')[0]}=={FOR_OLDER_PYTHON[line.split('==')[0]]}\n"
                          if line.split("==")[0] in FOR_OLDER_PYTHON else line + "\n"
                          for line in (REPO / "constraints.txt").read_text().splitlines())
    stamp = hashlib.sha256((constraints + "\n".join(packages)).encode()).hexdigest()
    if (env / ".stamp").exists() and (env / ".stamp").read_text() == stamp:
        return _tito_command(env)
    if not (env / "bin" / "python").exists():  # else pip changes what changed in the pins
        env.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([user_python(), "-m", "venv", str(env)], check=True)
    (env / "constraints.txt").write_text(constraints)
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-c", str(env / "constraints.txt"), *packages], check=True)
    # As in the Makefile: without rfc3987-syntax every process that reads a notebook starts 1.2 s sooner.
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "uninstall", "--quiet", "-y", "rfc3987-syntax"], check=True)
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(env)], check=True)
    (env / ".stamp").write_text(stamp)
    return _tito_command(env)


def _tito_command(env: Path) -> Path:
    # No "Would you like to get notified about Jupyter news?" over every user's page, no update check.
    settings = env / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text('{"@jupyterlab/apputils-extension:notification": '
                                             '{"fetchNews": "false", "checkForUpdates": false}}\n')
    (settings / "overrides.json").chmod(0o644)
    # `tito`: the course's (python -m tito.cli) in the instructor's server, where TITO_ROOT names the course;
    # the kit's student tito (python -m tito.student) in a student's, from the kit on PYTHONPATH.
    (env / "bin" / "tito").write_text(f'#!/bin/sh\n# tito of the course (instructor) or of the kit (students)\n'
                                      f'if [ -n "$TITO_ROOT" ]; then exec {env}/bin/python -m tito.cli "$@"; fi\n'
                                      f'exec {env}/bin/python -m tito.student "$@"\n')
    (env / "bin" / "tito").chmod(0o755)
    return env


def write_jupyter_config(state: Path, exchange: Path) -> Path:
    """STATE/jupyter/{student,instructor}: lab/'s two setups plus the exchange, for JUPYTER_CONFIG_PATH."""
    folder = state / "jupyter"
    for setup in ("student", "instructor"):
        dest = folder / setup
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(REPO / "lab" / setup, dest)
        text = (HUB / "nbgrader_exchange_config.py").read_text().replace("@EXCHANGE@", str(exchange))
        if setup == "student":  # the Assignment List fetches into the kit's workspace/, as `tito module start`
            text += ('\n# Students: fetched modules land where `tito module start` puts them.\n'
                     'c.Exchange.assignment_dir = os.path.expanduser("~/tinytorch/workspace")\n')
        else:  # Formgrader and nbgrader anywhere in the instructor's server use the course directory (its
            # nbgrader_config.py: sandbox, limits, collect), not the server's working directory (the home).
            text += ('\n# The instructor: the course directory (the hub sets TITO_ROOT to it).\n'
                     'if os.environ.get("TITO_ROOT"):\n'
                     '    c.CourseDirectory.root = os.environ["TITO_ROOT"]\n')
        (dest / "nbgrader_config.py").write_text(text)
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(folder)], check=True)
    return folder


def make_exchange(exchange: Path) -> None:
    """Mode 1777: what nbgrader's release checks for (777; the sticky bit is not compared), so it never
    warns or changes it; sticky, so nobody removes a folder someone else made."""
    exchange.mkdir(parents=True, exist_ok=True)
    exchange.chmod(0o1777)


def make_kit(dest: Path, modules: str | None = None) -> Path:
    if not (dest / "kit.json").exists():
        cmd = [sys.executable, "-m", "tito.cli", "kit", str(dest)] + (["--modules", modules] if modules else [])
        subprocess.run(cmd, check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                       stdout=subprocess.DEVNULL)
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(dest)], check=True)
    return dest


def add_user(name: str, full_name: str = "", password: str | None = None) -> str:
    """An OS user with a home of mode 700 and a password (random unless given); returns the password."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", full_name or name, name],
                       check=True)
    home = Path(pwd.getpwnam(name).pw_dir)
    home.chmod(0o700)
    password = password or secrets.token_urlsafe(12)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    return password


def remove_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], check=False)
    subprocess.run(["userdel", "--remove", name], check=False, stderr=subprocess.DEVNULL)


def instructor_course(instructor: str, source: Path = REPO) -> Path:
    """~INSTRUCTOR/tinytorch: a clone of the course repository (the committed state), owned by the
    instructor, mode 700, with its gradebook, submissions and feedback to come."""
    user = pwd.getpwnam(instructor)
    course = Path(user.pw_dir) / "tinytorch"
    if not course.exists():
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(source), str(course)], check=True)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(course)], check=True)
    course.chmod(0o700)
    return course


def hub_environment(state: Path, env: Path, exchange: Path, instructor: str, students: list[str],
                    course: Path, port: int, api_token: str | None = None, hub_port: int | None = None,
                    proxy_api_port: int | None = None) -> dict:
    """What jupyterhub_config.py reads (TINYTORCH_HUB_*)."""
    out = dict(os.environ, TINYTORCH_HUB_STATE=str(state), TINYTORCH_HUB_ENV=str(env),
               TINYTORCH_HUB_EXCHANGE=str(exchange), TINYTORCH_HUB_INSTRUCTOR=instructor,
               TINYTORCH_HUB_STUDENTS=" ".join(students), TINYTORCH_HUB_COURSE=str(course),
               TINYTORCH_HUB_PORT=str(port),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if api_token:
        out["TINYTORCH_HUB_API_TOKEN"] = api_token
    if hub_port:
        out["TINYTORCH_HUB_HUB_PORT"] = str(hub_port)
    if proxy_api_port:
        out["TINYTORCH_HUB_PROXY_API_PORT"] = str(proxy_api_port)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", required=True, help="student OS user names, space separated")
    parser.add_argument("--instructor", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state", type=Path, default=STATE)
    parser.add_argument("--exchange", type=Path, default=EXCHANGE)
    parser.add_argument("--modules", default=None, help="the kit's modules, e.g. 01-06 (default: every module)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("make hub runs as root: it creates OS users and starts each user's server as that user")
    students = args.users.split()
    print("hub: users' environment (first time: a minute or two)", flush=True)
    env = build_env(args.state / "env")
    write_jupyter_config(args.state, args.exchange)
    make_exchange(args.exchange)
    print("hub: student kit", flush=True)
    make_kit(args.state / "kit", args.modules)
    for name in [*students, args.instructor]:
        if name in _existing_users_with_password(args.state):
            continue
        password = add_user(name)
        with open(args.state / "passwords", "a", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            out.write(f"{name} {password}\n")
        print(f"hub: user {name}, password {password}")
    course = instructor_course(args.instructor)
    print(f"hub: the instructor's course directory is {course}")
    print(f"hub: http://127.0.0.1:{args.port}/ (passwords in {args.state / 'passwords'}, root only); Ctrl+C stops it")
    os.chdir(args.state)
    os.execvpe(sys.executable, [sys.executable, "-m", "jupyterhub", "-f", str(HUB / "jupyterhub_config.py")],
               hub_environment(args.state, env, args.exchange, args.instructor, students, course, args.port))


def _existing_users_with_password(state: Path) -> set[str]:
    path = state / "passwords"
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()} if path.exists() else set()


if __name__ == "__main__":
    main()
