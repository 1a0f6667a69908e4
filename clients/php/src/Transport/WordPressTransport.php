<?php

declare(strict_types=1);

namespace AiCredits\Transport;

use AiCredits\Exception\ConnectionFailed;

/** The transport inside WordPress: the HTTP API (wp_remote_request), so the site's proxy, CA and filters apply. */
final class WordPressTransport implements Transport
{
    public static function available(): bool
    {
        return function_exists('wp_remote_request');
    }

    public function send(string $method, string $url, array $headers, ?string $body, float $timeout): Response
    {
        $args = [
            'method' => $method,
            'headers' => $headers,
            'timeout' => $timeout,
            'redirection' => 0,
        ];
        if ($body !== null) {
            $args['body'] = $body;
        }
        $answer = \wp_remote_request($url, $args);
        if (\is_wp_error($answer)) {
            throw ConnectionFailed::because($answer->get_error_message());
        }
        $received = [];
        $raw = \wp_remote_retrieve_headers($answer);
        if (is_object($raw) && method_exists($raw, 'getAll')) {
            $raw = $raw->getAll();
        }
        foreach ((array) $raw as $name => $value) {
            $received[strtolower((string) $name)] = is_array($value) ? (string) end($value) : (string) $value;
        }
        return new Response(
            (int) \wp_remote_retrieve_response_code($answer),
            $received,
            (string) \wp_remote_retrieve_body($answer),
        );
    }
}
