<?php

declare(strict_types=1);

namespace AiCredits\Exception;

/**
 * No answer: the connection failed or was lost (status 0, code "connection_failed"). A write may
 * or may not have been applied: repeat it with the same getRequestId() to learn its outcome.
 */
class ConnectionFailed extends Unavailable
{
    public static function because(string $reason, ?string $requestId = null): self
    {
        return new self('AI Credits: no answer (' . $reason . ')', 0, 'connection_failed', [], $requestId);
    }

    public function withRequestId(?string $requestId): self
    {
        return new self($this->getMessage(), 0, 'connection_failed', [], $requestId, $this);
    }
}
