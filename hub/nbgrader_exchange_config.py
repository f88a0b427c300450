# nbgrader settings every hub user shares (hub/hubctl.py copies this into each Jupyter setup the hub uses;
# on a hub of your own: /etc/jupyter/nbgrader_config.py). The course's own nbgrader_config.py (the
# instructor's course directory) sees that Exchange.root is set here and leaves the exchange alone.
import os

c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.course_id = "tinytorch-optimization"  # must match the course's nbgrader_config.py
c.Exchange.root = "@EXCHANGE@"
# Submit lists no .ipynb_checkpoints/... as EXTRA; Fetch Feedback before any feedback says "no feedback
# released yet" instead of failing (tito/student_exchange.py: in the course and in the student kit).
c.ExchangeFactory.submit = "tito.student_exchange.Submit"
c.ExchangeFactory.fetch_feedback = "tito.student_exchange.FetchFeedback"
c.ExchangeFactory.list = "tito.student_exchange.List"
