<?php

declare(strict_types=1);

namespace AiCredits\Transport;

use AiCredits\Exception\ConnectionFailed;

/** Sends one HTTP request. Implementations never log headers (the Authorization header is a secret). */
interface Transport
{
    /**
     * @param array<string, string> $headers
     * @throws ConnectionFailed when no answer arrived (refused, timed out, connection lost)
     */
    public function send(string $method, string $url, array $headers, ?string $body, float $timeout): Response;
}
