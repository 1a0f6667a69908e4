<?php

declare(strict_types=1);

namespace AiCredits\Transport;

use AiCredits\Exception\ConnectionFailed;
use CurlHandle;
use RuntimeException;

/** The transport outside WordPress: ext-curl, one handle reused (keep-alive). */
final class CurlTransport implements Transport
{
    private ?CurlHandle $handle = null;

    public function __construct(private readonly float $connectTimeout = 5.0)
    {
        if (!function_exists('curl_init')) {
            throw new RuntimeException('AI Credits: the cURL extension (ext-curl) is not loaded');
        }
    }

    public function send(string $method, string $url, array $headers, ?string $body, float $timeout): Response
    {
        if ($this->handle === null) {
            $handle = curl_init();
            if ($handle === false) {
                throw ConnectionFailed::because('curl_init failed');
            }
            $this->handle = $handle;
        }
        $handle = $this->handle;
        curl_reset($handle);
        $lines = ['Expect:'];
        foreach ($headers as $name => $value) {
            $lines[] = $name . ': ' . $value;
        }
        $received = [];
        $options = [
            CURLOPT_URL => $url,
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $lines,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_CONNECTTIMEOUT_MS => (int) ($this->connectTimeout * 1000),
            CURLOPT_TIMEOUT_MS => (int) ($timeout * 1000),
            CURLOPT_HEADERFUNCTION => static function ($curl, string $line) use (&$received): int {
                $parts = explode(':', $line, 2);
                if (count($parts) === 2) {
                    $received[strtolower(trim($parts[0]))] = trim($parts[1]);
                } elseif (str_starts_with($line, 'HTTP/')) {
                    $received = []; // a new status line (e.g. after 100 Continue): a new set of headers
                }
                return strlen($line);
            },
        ];
        if ($body !== null) {
            $options[CURLOPT_POSTFIELDS] = $body;
        } elseif ($method === 'HEAD') {
            $options[CURLOPT_NOBODY] = true;
        }
        curl_setopt_array($handle, $options);
        $answer = curl_exec($handle);
        if (!is_string($answer)) {
            $reason = curl_error($handle) ?: 'cURL error ' . curl_errno($handle);
            $this->handle = null; // a fresh handle (and connection) next time
            throw ConnectionFailed::because($reason);
        }
        return new Response((int) curl_getinfo($handle, CURLINFO_RESPONSE_CODE), $received, $answer);
    }
}
