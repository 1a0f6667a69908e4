"""Who may call the admin routes (ai_credits.access): a session of the billing role, nobody else."""

from __future__ import annotations

import pytest

from ai_credits.access import is_billing_caller

ROLE = "arn:aws:iam::111122223333:role/ai-credits-billing"
SESSION = "arn:aws:sts::111122223333:assumed-role/ai-credits-billing/export-2026-11"


@pytest.mark.parametrize(
    ("role_arn", "caller_arn"),
    [
        (ROLE, SESSION),
        (ROLE, "arn:aws:sts::111122223333:assumed-role/ai-credits-billing/ab"),  # shortest session name
        # A role with a path: the assumed role's ARN names the role without it.
        ("arn:aws:iam::111122223333:role/billing/ops/ai-credits-billing", SESSION),
        (
            "arn:aws:iam::111122223333:role/service-role/Billing+Export=1,2.x@y_z-",
            ("arn:aws:sts::111122223333:assumed-role/Billing+Export=1,2.x@y_z-/botocore-session-1795597200"),
        ),
        # Other partitions, compared as a whole.
        (
            "arn:aws-us-gov:iam::111122223333:role/ai-credits-billing",
            "arn:aws-us-gov:sts::111122223333:assumed-role/ai-credits-billing/s1",
        ),
    ],
)
def test_a_session_of_the_billing_role_may_call(role_arn: str, caller_arn: str) -> None:
    assert is_billing_caller(caller_arn, role_arn)


@pytest.mark.parametrize(
    "caller_arn",
    [
        None,
        "",
        # another role, another account, another partition
        "arn:aws:sts::111122223333:assumed-role/ai-credits-admin/export-2026-11",
        "arn:aws:sts::444455556666:assumed-role/ai-credits-billing/export-2026-11",
        "arn:aws-cn:sts::111122223333:assumed-role/ai-credits-billing/export-2026-11",
        # a role whose name only starts or ends like it, or differs in case
        "arn:aws:sts::111122223333:assumed-role/ai-credits-billing-old/export",
        "arn:aws:sts::111122223333:assumed-role/old-ai-credits-billing/export",
        "arn:aws:sts::111122223333:assumed-role/AI-Credits-Billing/export",
        # the role itself, an IAM user of that name, the account's root, a federated user
        "arn:aws:iam::111122223333:role/ai-credits-billing",
        "arn:aws:iam::111122223333:user/ai-credits-billing",
        "arn:aws:iam::111122223333:root",
        "arn:aws:sts::111122223333:federated-user/ai-credits-billing",
        # malformed: no session, a session with a slash, extra text around it
        "arn:aws:sts::111122223333:assumed-role/ai-credits-billing",
        "arn:aws:sts::111122223333:assumed-role/ai-credits-billing/",
        "arn:aws:sts::111122223333:assumed-role/ai-credits-billing/a/b",
        f" {SESSION}",
        f"{SESSION}\n",
        f"x{SESSION}",
    ],
)
def test_any_other_caller_is_refused(caller_arn: str | None) -> None:
    assert not is_billing_caller(caller_arn, ROLE)


@pytest.mark.parametrize(
    "role_arn",
    [
        None,
        "",  # BILLING_ROLE_ARN unset: nobody may call
        # not an IAM role ARN: an assumed-role ARN, a user, a role without a name, a bad account
        SESSION,
        "arn:aws:iam::111122223333:user/ai-credits-billing",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:iam::111122223333:role/billing/",
        "arn:aws:iam::11112222333:role/ai-credits-billing",
        "arn:aws:iam:us-east-1:111122223333:role/ai-credits-billing",
        "ai-credits-billing",
        "*",
    ],
)
def test_a_billing_role_arn_that_is_not_an_iam_role_arn_lets_nobody_in(role_arn: str | None) -> None:
    assert not is_billing_caller(SESSION, role_arn)
