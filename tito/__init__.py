"""tito: the course command line (build, release, export, grade, status)."""
