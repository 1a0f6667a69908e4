<?php

declare(strict_types=1);

/*
 * Just enough of WordPress for the tests: the HTTP API (over PHP's own HTTP stream wrapper, not
 * cURL, so the WordPress transport is exercised on its own) and the options API (in memory).
 */

final class WP_Error
{
    public function __construct(private string $message)
    {
    }

    public function get_error_message(): string
    {
        return $this->message;
    }
}

/** @var array<string, mixed> $GLOBALS['wp_test_options'] */
$GLOBALS['wp_test_options'] = [];
/** @var list<array<string, mixed>> the arguments of every wp_remote_request call */
$GLOBALS['wp_test_requests'] = [];

function is_wp_error(mixed $thing): bool
{
    return $thing instanceof WP_Error;
}

/** @param array<string, mixed> $args */
function wp_remote_request(string $url, array $args = []): array|WP_Error
{
    $GLOBALS['wp_test_requests'][] = ['url' => $url, 'args' => $args];
    $lines = [];
    foreach ($args['headers'] ?? [] as $name => $value) {
        $lines[] = $name . ': ' . $value;
    }
    $context = stream_context_create(['http' => [
        'method' => $args['method'] ?? 'GET',
        'header' => implode("\r\n", $lines),
        'content' => $args['body'] ?? '',
        'timeout' => $args['timeout'] ?? 5,
        'ignore_errors' => true,
        'follow_location' => 0,
        'protocol_version' => 1.1,
    ]]);
    $body = @file_get_contents($url, false, $context);
    $http_response_header ??= [];
    if ($body === false || $http_response_header === []) {
        return new WP_Error('http_request_failed: ' . (error_get_last()['message'] ?? 'no answer'));
    }
    $code = 0;
    $headers = [];
    foreach ($http_response_header as $line) {
        if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $match) === 1) {
            $code = (int) $match[1];
            $headers = [];
        } elseif (str_contains($line, ':')) {
            [$name, $value] = explode(':', $line, 2);
            $headers[strtolower(trim($name))] = trim($value);
        }
    }
    return ['response' => ['code' => $code, 'message' => ''], 'headers' => $headers, 'body' => $body];
}

/** @param array<string, mixed> $response */
function wp_remote_retrieve_response_code(array|WP_Error $response): int|string
{
    return is_array($response) ? $response['response']['code'] : '';
}

/** @param array<string, mixed> $response */
function wp_remote_retrieve_headers(array|WP_Error $response): array
{
    return is_array($response) ? $response['headers'] : [];
}

/** @param array<string, mixed> $response */
function wp_remote_retrieve_body(array|WP_Error $response): string
{
    return is_array($response) ? $response['body'] : '';
}

function get_option(string $option, mixed $default = false): mixed
{
    return $GLOBALS['wp_test_options'][$option] ?? $default;
}

function update_option(string $option, mixed $value, string|bool|null $autoload = null): bool
{
    $GLOBALS['wp_test_options'][$option] = $value;
    return true;
}

function delete_option(string $option): bool
{
    unset($GLOBALS['wp_test_options'][$option]);
    return true;
}

function get_transient(string $transient): mixed
{
    return $GLOBALS['wp_test_options']['_transient_' . $transient] ?? false;
}

function set_transient(string $transient, mixed $value, int $expiration = 0): bool
{
    $GLOBALS['wp_test_options']['_transient_' . $transient] = $value;
    return true;
}

function delete_transient(string $transient): bool
{
    unset($GLOBALS['wp_test_options']['_transient_' . $transient]);
    return true;
}
