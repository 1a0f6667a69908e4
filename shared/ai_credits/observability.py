"""The one Logger and Metrics of every function (STYLE.md habit 6).

Service name and namespace come from POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE
(set in template.yaml). Nothing here logs a request body or an Authorization header:
license keys and tokens never reach the logs.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

# A request that charges nothing (a read, a refusal) has no metric to publish: not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")
