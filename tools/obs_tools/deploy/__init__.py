"""Deploy obs-stack to Kubernetes: `make up`, `make status`, `make open`, `make down`.

Run as `obs-deploy COMMAND` (installed by scripts/bootstrap.sh; cli.py). Reads
KUBECONFIG through kubectl, OBS_K8S_CONTEXT (kubectl context; default: the current
one), OBS_KUBECTL (the kubectl to run), OBS_MINIKUBE_PROFILE (default `minikube`),
MINIKUBE_HOME, and the Secret variables listed in secrets.py (SECRETS). The
objects it expects from k8s/ are named in contract.py: one place to change if the
manifests change.
"""
