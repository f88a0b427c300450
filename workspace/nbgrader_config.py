# nbgrader's Assignment List reads its configuration in the folder it fetches into
# (Exchange.assignment_dir, this workspace/ folder): load the course's configuration.
c = get_config()  # noqa: F821 (provided by nbgrader)
load_subconfig("../nbgrader_config.py")  # noqa: F821
