"""Developer tooling for running AI Credits on one machine (never deployed).

- :mod:`local.cfn` reads ``template.yaml`` (CloudFormation short tags included) so the local table,
  routes and function settings come from the same file as the deployment.
- :mod:`local.dynamodb_local` fetches and runs AWS's DynamoDB Local.
- :mod:`local.gateway` plays API Gateway (HTTP API, payload format 2.0) and the Lambda Invoke API:
  :mod:`local.apigw` builds the events, authorizes and maps the results, :mod:`local.environments`
  runs the functions in worker processes, :mod:`local.pages` are its docs and demo console pages.
- :mod:`local.tokens` mints the local portal JWTs and knows the local admin token.
- :mod:`local.run` is ``make run``.
"""

from pathlib import Path

#: The repository root: ``template.yaml``, ``functions/`` and ``shared/`` live here.
REPO_ROOT = Path(__file__).resolve().parent.parent
