<?php

declare(strict_types=1);

namespace AiCredits;

use AiCredits\Exception\ApiException;
use AiCredits\Exception\Conflict;
use AiCredits\Exception\ConnectionFailed;
use AiCredits\Exception\InsufficientCredits;
use AiCredits\Exception\LicenseExpired;
use AiCredits\Exception\NotFound;
use AiCredits\Exception\Unauthorized;
use AiCredits\Exception\Unavailable;
use AiCredits\Exception\ValidationFailed;
use AiCredits\Transport\CurlTransport;
use AiCredits\Transport\Response;
use AiCredits\Transport\Transport;
use AiCredits\Transport\WordPressTransport;
use InvalidArgumentException;
use JsonException;

/**
 * The plugin's side of the AI Credits API.
 *
 * Every request that answers 503 or loses its connection is sent again, unchanged, up to
 * `max_attempts` times in all, waiting the answer's Retry-After (else a short exponential
 * back-off): a consume keeps its request_id and a hold its hold_id, so the service applies
 * it at most once and the repeat answers its outcome.
 */
final class Client
{
    public const VERSION = '0.1.0';
    /** What request_id and hold_id may contain (the contract's pattern). */
    public const ID_PATTERN = '/^[A-Za-z0-9._:-]{1,128}$/';

    private readonly string $baseUrl;
    private readonly TokenStore $tokens;
    private readonly Transport $transport;
    private readonly int $maxAttempts;
    private readonly float $timeout;
    private readonly float $maxRetryDelay;
    /** @var callable(float): void */
    private $sleep;
    private readonly BalanceCache $balances;
    private ?int $lastRemaining = null;

    /**
     * @param array{max_attempts?: int, timeout?: float, max_retry_delay?: float, sleep?: callable(float): void, balance_cache?: BalanceCache} $options
     *   max_attempts: tries per request in all (default 3); timeout: seconds per try (10);
     *   max_retry_delay: the longest wait between tries, whatever Retry-After says (5);
     *   balance_cache: where the last balance and its ETag are kept (default: in this object);
     *   sleep: how to wait (seconds), for tests.
     */
    public function __construct(
        string $baseUrl,
        ?TokenStore $tokens = null,
        ?Transport $transport = null,
        array $options = [],
    ) {
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->tokens = $tokens ?? new InMemoryTokenStore();
        $this->transport = $transport ?? self::defaultTransport();
        $this->maxAttempts = max(1, (int) ($options['max_attempts'] ?? 3));
        $this->timeout = (float) ($options['timeout'] ?? 10.0);
        $this->maxRetryDelay = (float) ($options['max_retry_delay'] ?? 5.0);
        $this->balances = $options['balance_cache'] ?? new InMemoryBalanceCache();
        $this->sleep = $options['sleep'] ?? static function (float $seconds): void {
            if ($seconds > 0) {
                usleep((int) round($seconds * 1_000_000));
            }
        };
    }

    /** WordPress's HTTP API when WordPress is loaded, cURL otherwise. */
    public static function defaultTransport(): Transport
    {
        return WordPressTransport::available() ? new WordPressTransport() : new CurlTransport();
    }

    /** A request id for consume(): random, in the contract's charset. */
    public static function newRequestId(string $prefix = ''): string
    {
        $id = $prefix . bin2hex(random_bytes(16));
        self::checkId($id, 'request_id');
        return $id;
    }

    public function isActivated(): bool
    {
        return $this->tokens->getToken() !== null;
    }

    /**
     * POST /v1/activations. The activation token goes to the TokenStore and is left out of the
     * answer returned: {site, environment, network, license_id, credits}.
     *
     * @return array<string, mixed>
     */
    public function activate(
        #[\SensitiveParameter] string $licenseKey,
        string $siteUrl,
        string $environment,
        bool $network = false,
    ): array {
        $body = ['license_key' => $licenseKey, 'site_url' => $siteUrl, 'environment' => $environment];
        if ($network) {
            $body['network'] = true;
        }
        $answer = $this->json($this->call('POST', '/v1/activations', $body, false));
        $token = $answer['activation_token'] ?? null;
        if (!is_string($token) || $token === '') {
            throw new ApiException('AI Credits: the activation answer has no token', 200, 'invalid_answer');
        }
        $this->tokens->saveToken($token);
        unset($answer['activation_token']);
        $this->forgetBalance();
        $this->noteRemaining($answer['credits']['remaining'] ?? null);
        return $answer;
    }

    /**
     * GET /v1/balance: {license, site, needs_allocation, alerts}. Sends If-None-Match with the
     * ETag of the last balance; a 304 answers that balance again.
     *
     * @return array<string, mixed>
     */
    public function balance(): array
    {
        $cached = $this->balances->load();
        $headers = $cached === null ? [] : ['If-None-Match' => $cached['etag']];
        $response = $this->call('GET', '/v1/balance', null, true, $headers);
        if ($response->status === 304 && $cached !== null) {
            $this->noteRemaining($cached['balance']['site']['remaining'] ?? null);
            return $cached['balance'];
        }
        $balance = $this->json($response);
        $etag = $response->header('etag');
        $etag === null ? $this->balances->clear() : $this->balances->save($etag, $balance);
        $this->noteRemaining($balance['site']['remaining'] ?? null);
        return $balance;
    }

    /** The ETag of the balance last read (null before the first). */
    public function balanceEtag(): ?string
    {
        return $this->balances->load()['etag'] ?? null;
    }

    /**
     * The balance's alerts, in the service's order: [{code, ...}] with code credits_exhausted,
     * credits_low (threshold_percent), allocation_needed, license_expired, license_expiring (expires_at).
     *
     * @return list<array<string, mixed>>
     */
    public function alerts(): array
    {
        $alerts = $this->balance()['alerts'] ?? [];
        return is_array($alerts) ? array_values($alerts) : [];
    }

    /**
     * POST /v1/consume: {request_id, consumed, remaining, replayed}. Without a request id, a random
     * one is made; the same one is sent again after a 503 or a lost connection (the exception's
     * getRequestId() names it when the tries run out). Sends the last `remaining` seen (else the
     * cached balance's) as expected_remaining.
     *
     * @return array<string, mixed>
     * @throws InsufficientCredits (getRemaining()), LicenseExpired, Unauthorized, Conflict, Unavailable
     */
    public function consume(
        int $amount,
        ?string $feature = null,
        ?string $subsiteUrl = null,
        ?string $requestId = null,
    ): array {
        $requestId ??= self::newRequestId();
        self::checkId($requestId, 'request_id');
        $body = ['amount' => $amount, 'request_id' => $requestId];
        if ($feature !== null) {
            $body['feature'] = $feature;
        }
        if ($subsiteUrl !== null) {
            $body['subsite_url'] = $subsiteUrl;
        }
        $hint = $this->lastRemaining ?? $this->balances->load()['balance']['site']['remaining'] ?? null;
        if (is_int($hint) && $hint >= 0) {
            $body['expected_remaining'] = $hint; // a hint, never part of the request
        }
        $answer = $this->json($this->call('POST', '/v1/consume', $body, true, [], $requestId));
        $this->noteRemaining($answer['remaining'] ?? null);
        return $answer;
    }

    /**
     * POST /v1/holds: reserve `amount` before a call whose cost is known afterwards.
     * {hold_id, amount, expires_at, remaining, replayed}.
     *
     * @return array<string, mixed>
     */
    public function hold(
        string $holdId,
        int $amount,
        ?int $ttlSeconds = null,
        ?string $feature = null,
        ?string $subsiteUrl = null,
    ): array {
        self::checkId($holdId, 'hold_id');
        $body = ['hold_id' => $holdId, 'amount' => $amount];
        if ($ttlSeconds !== null) {
            $body['ttl_seconds'] = $ttlSeconds;
        }
        if ($feature !== null) {
            $body['feature'] = $feature;
        }
        if ($subsiteUrl !== null) {
            $body['subsite_url'] = $subsiteUrl;
        }
        $answer = $this->json($this->call('POST', '/v1/holds', $body, true, [], $holdId));
        $this->noteRemaining($answer['remaining'] ?? null);
        return $answer;
    }

    /**
     * POST /v1/holds/{hold_id}/capture: charge what the call cost (0 up to the held amount), the
     * rest returns. {hold_id, captured, released, remaining, replayed}.
     *
     * @return array<string, mixed>
     */
    public function capture(string $holdId, int $amount, ?string $subsiteUrl = null): array
    {
        self::checkId($holdId, 'hold_id');
        $path = '/v1/holds/' . rawurlencode($holdId) . '/capture' . self::subsiteQuery($subsiteUrl);
        $answer = $this->json($this->call('POST', $path, ['amount' => $amount], true, [], $holdId));
        $this->noteRemaining($answer['remaining'] ?? null);
        return $answer;
    }

    /**
     * DELETE /v1/holds/{hold_id}: give the held credits back. {hold_id, released, remaining}.
     *
     * @return array<string, mixed>
     */
    public function release(string $holdId, ?string $subsiteUrl = null): array
    {
        self::checkId($holdId, 'hold_id');
        $path = '/v1/holds/' . rawurlencode($holdId) . self::subsiteQuery($subsiteUrl);
        $answer = $this->json($this->call('DELETE', $path, null, true, [], $holdId));
        $this->noteRemaining($answer['remaining'] ?? null);
        return $answer;
    }

    /**
     * GET /v1/holds/{hold_id}: {hold_id, amount, status, expires_at, captured?, feature?}.
     *
     * @return array<string, mixed>
     */
    public function getHold(string $holdId, ?string $subsiteUrl = null): array
    {
        self::checkId($holdId, 'hold_id');
        $path = '/v1/holds/' . rawurlencode($holdId) . self::subsiteQuery($subsiteUrl);
        return $this->json($this->call('GET', $path, null, true));
    }

    /**
     * GET /v1/usage: this site in its current term, {site, term_start, term_end, credits,
     * requests, features, days, subsites?}. Derived from the service's event stream: a
     * consume shows after a short delay.
     *
     * @return array<string, mixed>
     */
    public function usage(): array
    {
        return $this->json($this->call('GET', '/v1/usage', null, true));
    }

    /** DELETE /v1/activations/current; forgets the token (also when the service no longer knew it). */
    public function deactivate(): void
    {
        try {
            $this->call('DELETE', '/v1/activations/current', null, true);
        } catch (Unauthorized $error) {
            if (!$error->getPrevious() instanceof ConnectionFailed) {
                throw $error;
            }
            // the first try deactivated, its answer was lost: the repeat no longer knows the token
        } finally {
            $this->forgetBalance();
        }
        $this->tokens->clearToken();
    }

    /** The `remaining` of the last answer seen (sent as expected_remaining), null if none. */
    public function lastRemaining(): ?int
    {
        return $this->lastRemaining;
    }

    /** @return array<string, mixed> var_dump/print_r show no secret */
    public function __debugInfo(): array
    {
        return ['baseUrl' => $this->baseUrl, 'activated' => $this->isActivated(), 'etag' => $this->balanceEtag()];
    }

    // -- internals ------------------------------------------------------------------------------

    /**
     * One request, repeated unchanged after a 503 or a lost connection. Error answers throw.
     *
     * @param array<string, mixed>|null $body
     * @param array<string, string> $headers
     */
    private function call(
        string $method,
        string $path,
        ?array $body,
        bool $authenticated,
        array $headers = [],
        ?string $requestId = null,
    ): Response {
        $headers += ['Accept' => 'application/json', 'User-Agent' => 'ai-credits-php/' . self::VERSION];
        if ($authenticated) {
            $token = $this->tokens->getToken();
            if ($token === null) {
                throw new Unauthorized('AI Credits: this site is not activated', 401, 'unauthorized', [], $requestId);
            }
            $headers['Authorization'] = 'Bearer ' . $token;
        }
        $payload = null;
        if ($body !== null) {
            $headers['Content-Type'] = 'application/json';
            $payload = json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        }
        $lost = null;
        for ($attempt = 1; ; $attempt++) {
            try {
                $response = $this->transport->send($method, $this->baseUrl . $path, $headers, $payload, $this->timeout);
            } catch (ConnectionFailed $failure) {
                $lost = $failure;
                if ($attempt >= $this->maxAttempts) {
                    throw $failure->withRequestId($requestId);
                }
                ($this->sleep)($this->backoff($attempt, null));
                continue;
            }
            if ($response->status === 503 && $attempt < $this->maxAttempts) {
                ($this->sleep)($this->backoff($attempt, $response->header('retry-after')));
                continue;
            }
            break;
        }
        if ($response->status >= 400) {
            throw $this->error($response, $requestId, $lost);
        }
        return $response;
    }

    /** Seconds to wait before try `attempt + 1`: Retry-After when given, else 0.2 s doubling, with jitter. */
    private function backoff(int $attempt, ?string $retryAfter): float
    {
        if ($retryAfter !== null && is_numeric(trim($retryAfter))) {
            return min($this->maxRetryDelay, max(0.0, (float) trim($retryAfter)));
        }
        $delay = 0.2 * (2 ** ($attempt - 1));
        return min($this->maxRetryDelay, $delay / 2 + $delay / 2 * (random_int(0, 1000) / 1000));
    }

    private function error(Response $response, ?string $requestId, ?ConnectionFailed $lost): ApiException
    {
        $problem = [];
        try {
            $decoded = $response->body === '' ? null : json_decode($response->body, true, 64, JSON_THROW_ON_ERROR);
            $problem = is_array($decoded) ? $decoded : [];
        } catch (JsonException) {
        }
        $status = $response->status;
        $code = is_string($problem['code'] ?? null) ? $problem['code'] : 'http_' . $status;
        $detail = match (true) {
            is_string($problem['detail'] ?? null) => $problem['detail'],
            is_string($problem['title'] ?? null) => $problem['title'],
            default => 'HTTP ' . $status,
        };
        $message = 'AI Credits: ' . $code . ' (' . $status . '): ' . $detail;
        if ($status === 503) {
            $retryAfter = $response->header('retry-after');
            return new Unavailable(
                $message,
                $status,
                $code,
                $problem,
                $requestId,
                $lost,
                is_numeric($retryAfter) ? (int) $retryAfter : null,
            );
        }
        $class = match (true) {
            $code === 'unauthorized', $status === 401 => Unauthorized::class,
            $code === 'insufficient_credits', $status === 402 => InsufficientCredits::class,
            $code === 'license_expired' => LicenseExpired::class,
            $code === 'not_found', $status === 404 => NotFound::class,
            $status === 409 => Conflict::class,
            $code === 'validation_error', $status === 422 => ValidationFailed::class,
            default => ApiException::class,
        };
        return new $class($message, $status, $code, $problem, $requestId, $lost);
    }

    /** @return array<string, mixed> */
    private function json(Response $response): array
    {
        try {
            $decoded = json_decode($response->body, true, 512, JSON_THROW_ON_ERROR);
        } catch (JsonException $error) {
            throw new ApiException('AI Credits: the answer is not JSON', $response->status, 'invalid_answer', [], null, $error);
        }
        if (!is_array($decoded)) {
            throw new ApiException('AI Credits: the answer is not a JSON object', $response->status, 'invalid_answer');
        }
        return $decoded;
    }

    private function noteRemaining(mixed $remaining): void
    {
        if (is_int($remaining) && $remaining >= 0) {
            $this->lastRemaining = $remaining;
        }
    }

    private function forgetBalance(): void
    {
        $this->balances->clear();
    }

    private static function subsiteQuery(?string $subsiteUrl): string
    {
        return $subsiteUrl === null ? '' : '?' . http_build_query(['subsite_url' => $subsiteUrl], '', '&', PHP_QUERY_RFC3986);
    }

    private static function checkId(string $id, string $what): void
    {
        if (preg_match(self::ID_PATTERN, $id) !== 1) {
            throw new InvalidArgumentException($what . ' must be 1 to 128 of A-Za-z0-9._:-');
        }
    }
}
