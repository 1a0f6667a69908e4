<?php

declare(strict_types=1);

namespace AiCredits\Transport;

/** An HTTP answer: status, headers (lower-case names), body. */
final class Response
{
    /** @param array<string, string> $headers lower-case names */
    public function __construct(
        public readonly int $status,
        public readonly array $headers,
        public readonly string $body,
    ) {
    }

    public function header(string $name): ?string
    {
        return $this->headers[strtolower($name)] ?? null;
    }
}
