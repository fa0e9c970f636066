"""obs-stack's tooling: the local stack (`obs-stack`), the Kubernetes deploy tool
(`obs-deploy`), the generated views (`obs-views`), the load generator behind the
course's traffic scripts (`obs-loadgen`) and the benchmark (`obs-bench`).

Installed editable into the project's venv by scripts/bootstrap.sh, and on its own into
the deploy tool's small venv (bootstrap.sh deploy: Python >= 3.10, PyYAML). Reads no
environment variables on import.
"""
