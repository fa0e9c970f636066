"""Deploy obs-stack to Kubernetes: `make up`, `make status`, `make open`, `make down`.

Run as `obs-deploy COMMAND` (installed by scripts/bootstrap.sh). cli.py parses the
command line; deployment.py runs the steps of preflight, up, status and down, with
minikube.py (Minikube's sizing, start and image builds), secrets.py (the Secrets),
rollout.py (readiness) and resources.py (what the render needs); access.py is `make
open` (port-forwards and URLs); totals.py is `obs-deploy totals`. Every kubectl and
minikube call goes through kubectl.py.

Reads KUBECONFIG through kubectl, OBS_K8S_CONTEXT (kubectl context; default: the
current one), OBS_KUBECTL (the kubectl to run), OBS_MINIKUBE_PROFILE (default
`minikube`) (these three in cli.py), MINIKUBE_HOME (minikube.py), and the Secret
variables listed in secrets.py (SECRETS). The objects it expects from k8s/ are named in
contract.py: one place to change if the manifests change.
"""
