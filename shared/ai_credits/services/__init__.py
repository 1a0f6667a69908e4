"""The use cases, one module per audience: load -> decide with ``rules`` -> one conditional write.

| module       | caller                     | use cases                                              |
|--------------|----------------------------|--------------------------------------------------------|
| ``plugin``   | the WordPress plugin       | activate, deactivate, balance, consume                 |
| ``portal``   | the customer's account     | list_licenses, license_credits, apply_allocations      |
| ``billing``  | the store's billing system | provision_license                                      |
| ``renewal``  | the scheduler              | renew_license, renew_due                               |
| ``operator`` | the operator's CLI         | audit                                                  |

Every use case takes ``now`` (an RFC 3339 string) instead of reading a clock, raises only
``ai_credits.errors`` exceptions for what the caller did wrong, and never enforces a limit with
a read alone: the write's conditions do (``store``). A decision made on a read that a
concurrent write invalidated is made again on fresh values by ``retry.retry_on_stale``.
"""
