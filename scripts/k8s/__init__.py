"""Deploy obs-stack to Kubernetes: `make up`, `make status`, `make open`, `make down`.

Run as `python -m k8s COMMAND` with scripts/ on the path (the Makefile does). Reads
KUBECONFIG through kubectl, OBS_K8S_CONTEXT (kubectl context; default: the current
one), OBS_KUBECTL (the kubectl to run), OBS_MINIKUBE_PROFILE (default `minikube`),
MINIKUBE_HOME, and the Secret variables listed in k8s/secrets.py (SECRETS). The
objects it expects from k8s/ are named in k8s/contract.py: one place to change if the
manifests change.
"""
