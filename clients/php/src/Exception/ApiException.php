<?php

declare(strict_types=1);

namespace AiCredits\Exception;

use RuntimeException;
use Throwable;

/**
 * An error answer of the API (application/problem+json), or a request that could not be completed.
 *
 * getErrorCode() is the problem's `code` (e.g. "insufficient_credits"); getProblem() is the whole
 * problem document, so extra members (`remaining`, `errors`...) are at hand. For a write
 * (consume, hold, capture, release), getRequestId() is the request_id / hold_id it was sent with:
 * repeating the write with it later applies it at most once.
 */
class ApiException extends RuntimeException
{
    /** @param array<string, mixed> $problem */
    public function __construct(
        string $message,
        private readonly int $status,
        private readonly string $errorCode,
        private readonly array $problem = [],
        private readonly ?string $requestId = null,
        ?Throwable $previous = null,
    ) {
        parent::__construct($message, $status, $previous);
    }

    /** The HTTP status (0 when no answer arrived). */
    public function getStatus(): int
    {
        return $this->status;
    }

    /** The problem's `code`: unauthorized, insufficient_credits, license_expired, not_found... */
    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /** @return array<string, mixed> the problem document as received ([] when there was none) */
    public function getProblem(): array
    {
        return $this->problem;
    }

    /** One member of the problem document (e.g. "remaining"), null when absent. */
    public function getMember(string $name): mixed
    {
        return $this->problem[$name] ?? null;
    }

    public function getDetail(): ?string
    {
        $detail = $this->problem['detail'] ?? null;
        return is_string($detail) ? $detail : null;
    }

    /** The request_id (consume) or hold_id (holds) of the write, to repeat it with. */
    public function getRequestId(): ?string
    {
        return $this->requestId;
    }
}
