<?php

declare(strict_types=1);

namespace AiCredits\Exception;

use Throwable;

/**
 * 503 unavailable, still so after the client's retries: try again later. A write must then be
 * repeated with the same getRequestId() (it applies at most once and answers its outcome).
 */
class Unavailable extends ApiException
{
    /** @param array<string, mixed> $problem */
    public function __construct(
        string $message,
        int $status,
        string $errorCode,
        array $problem = [],
        ?string $requestId = null,
        ?Throwable $previous = null,
        private readonly ?int $retryAfter = null,
    ) {
        parent::__construct($message, $status, $errorCode, $problem, $requestId, $previous);
    }

    /** Seconds the server asked to wait (Retry-After), when it said. */
    public function getRetryAfter(): ?int
    {
        return $this->retryAfter;
    }
}
