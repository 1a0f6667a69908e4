"""The AI Credits rules package: deployed as the Lambda layer every function shares.

Flow (see STYLE.md): handlers -> services (one function per use case) -> rules (pure)
and store (the only module that knows DynamoDB). Errors are domain exceptions from
``errors``; ``api`` turns them into problem+json.
"""
