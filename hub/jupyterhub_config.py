"""JupyterHub for the course: one server per user, each as that user's own OS user (LocalProcessSpawner).

Started by `make hub` (hub/hubctl.py, which sets the TINYTORCH_HUB_* variables below) and by
tests/test_hub.py. Students' servers run the student JupyterLab setup (lab/student: no formgrader, no
Create Assignment) on their own copy of the student kit, ~/tinytorch; the instructor's server runs the
instructor setup (lab/instructor) in the course directory, where nbgrader_config.py grades in the
sandbox. Everyone shares the exchange (nbgrader_exchange_config.py).

Several hosts (Zero to JupyterHub on Kubernetes, README "Running a class on JupyterHub"): the lines
marked MULTI-HOST change; the rest stays.
"""
import os
import pwd
import shutil
import subprocess
from pathlib import Path

c = get_config()  # noqa: F821 (provided by jupyterhub)
HUB = Path(__file__).resolve().parent
STATE = Path(os.environ.get("TINYTORCH_HUB_STATE", "/srv/tinytorch-hub"))
ENV = Path(os.environ.get("TINYTORCH_HUB_ENV", STATE / "env"))
EXCHANGE = os.environ.get("TINYTORCH_HUB_EXCHANGE", "/srv/nbgrader/exchange")
INSTRUCTOR = os.environ["TINYTORCH_HUB_INSTRUCTOR"]
STUDENTS = os.environ.get("TINYTORCH_HUB_STUDENTS", "").split()
COURSE = Path(os.environ["TINYTORCH_HUB_COURSE"])  # the instructor's course directory
KIT = STATE / "kit"

# The hub and its proxy listen on this host only; put TLS (a reverse proxy) in front for a real class.
c.JupyterHub.ip = "127.0.0.1"  # MULTI-HOST: Zero to JupyterHub's proxy service does this
c.JupyterHub.port = PORT = int(os.environ.get("TINYTORCH_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
# The hub's own port and the proxy's API port follow the public one (8000 -> 8001, 8002), so two hubs
# on one host (a class and the test) never share them (JupyterHub's defaults: 8081 and 8001 for every hub).
c.JupyterHub.hub_port = int(os.environ.get("TINYTORCH_HUB_HUB_PORT", PORT + 1))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(os.environ.get('TINYTORCH_HUB_PROXY_API_PORT', PORT + 2))}"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"  # MULTI-HOST: hub.db in the helm chart
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = [str(HUB / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops the proxy and every user's server

# Who may log in: the class's OS users, with their passwords (PAM).
# MULTI-HOST: an OAuth authenticator (GitHub, your university's), c.Authenticator.allowed_users the same.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(STUDENTS) | {INSTRUCTOR}
c.Authenticator.admin_users = {INSTRUCTOR}

# Each server runs as its user's own OS user, from the users' environment (hub/hubctl.py build_env).
# MULTI-HOST: c.JupyterHub.spawner_class = "kubespawner.KubeSpawner" with an image holding the same
# environment; each user's home a persistent volume; the instructor's server a profile of its own.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(ENV / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.args = ["--LabApp.expose_app_in_browser=True"]  # window.jupyterapp, for the browser test
c.JupyterHub.shutdown_on_logout = False


def _home(name: str) -> Path:
    return Path(pwd.getpwnam(name).pw_dir)


def _student_kit(name: str) -> Path:
    """~/tinytorch: the student's own copy of the kit, made once (as root, then given to the student)."""
    kit = _home(name) / "tinytorch"
    if not kit.exists():
        shutil.copytree(KIT, kit, symlinks=True)
        (kit / "workspace").mkdir(exist_ok=True)
        user = pwd.getpwnam(name)
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(kit)], check=True)
    return kit


def pre_spawn_hook(spawner):
    """Where each user's server starts and what it sees (the two setups of lab/, README)."""
    name = spawner.user.name
    path = [str(ENV / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
    if name == INSTRUCTOR:
        root = COURSE
        spawner.environment.update(
            JUPYTER_CONFIG_PATH=str(STATE / "jupyter" / "instructor"),
            TITO_ROOT=str(COURSE), PYTHONPATH=str(COURSE))  # tito from the course (nbgrader_config.py imports it)
    else:
        root = _student_kit(name)
        spawner.environment.update(
            JUPYTER_CONFIG_PATH=str(STATE / "jupyter" / "student"),
            PYTHONPATH=str(root))  # the kit's tinytorch_lib (the student's own exports) and the student tito
    spawner.environment.update(PATH=":".join(path), MPLBACKEND="Agg")
    spawner.notebook_dir = str(root)


c.Spawner.pre_spawn_hook = pre_spawn_hook

# The test's (and an operator's script's) access: an API token with admin rights on users and servers.
if os.environ.get("TINYTORCH_HUB_API_TOKEN"):
    c.JupyterHub.services = [{"name": "tinytorch-admin", "api_token": os.environ["TINYTORCH_HUB_API_TOKEN"]}]
    c.JupyterHub.load_roles = [{"name": "tinytorch-admin", "services": ["tinytorch-admin"],
                                "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users",
                                           "access:servers"]}]
