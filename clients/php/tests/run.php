<?php

declare(strict_types=1);

/*
 * Test driver (tests/clients/test_php_client.py): `php run.php [wordpress]` (with `wordpress`,
 * under the WordPress shim: the WordPress transport and option store) reads a JSON script on stdin,
 *   {"base_url": ..., "token": ?, "options": {...}, "balance_cache_file": ? (a cache shared by runs),
 *    "ops": [{"op": "consume", "args": {"amount": 5, "feature": "rewrite"}}, ...]}
 * calls the Client's methods in order (named arguments) and prints one JSON document:
 *   {"results": [{"ok": <answer>} | {"error": {class, status, code, problem, request_id, ...}}],
 *    "sleeps": [seconds waited between tries], "token": <the store's token, for the next script>}
 */

error_reporting(E_ALL);
set_error_handler(static function (int $severity, string $message, string $file, int $line): bool {
    if ((error_reporting() & $severity) === 0) {
        return false; // silenced with @
    }
    throw new ErrorException($message, 0, $severity, $file, $line); // any notice or deprecation fails the test
});

if ($argc > 1 && $argv[1] === 'wordpress') {
    require __DIR__ . '/wordpress_shim.php';
}
require __DIR__ . '/../autoload.php';

use AiCredits\BalanceCache;
use AiCredits\Client;
use AiCredits\Exception\ApiException;
use AiCredits\Exception\InsufficientCredits;
use AiCredits\Exception\Unavailable;
use AiCredits\InMemoryTokenStore;
use AiCredits\TokenStore;
use AiCredits\Transport\CurlTransport;
use AiCredits\Transport\WordPressTransport;
use AiCredits\WordPressOptionTokenStore;
use AiCredits\WordPressTransientBalanceCache;

/** A BalanceCache in a JSON file: what a second page load finds. */
final class JsonFileBalanceCache implements BalanceCache
{
    public function __construct(private readonly string $path)
    {
    }

    public function load(): ?array
    {
        return is_file($this->path) ? json_decode((string) file_get_contents($this->path), true, 64, JSON_THROW_ON_ERROR) : null;
    }

    public function save(string $etag, array $balance): void
    {
        file_put_contents($this->path, json_encode(['etag' => $etag, 'balance' => $balance], JSON_THROW_ON_ERROR));
    }

    public function clear(): void
    {
        is_file($this->path) && unlink($this->path);
    }
}

$script = json_decode((string) stream_get_contents(STDIN), true, 64, JSON_THROW_ON_ERROR);
$wordpress = WordPressTransport::available();
$sleeps = [];
$options = ($script['options'] ?? []) + [
    'sleep' => static function (float $seconds) use (&$sleeps): void {
        $sleeps[] = $seconds;
        usleep((int) ($seconds * 1_000_000));
    },
];
/** @var TokenStore $tokens */
$tokens = $wordpress ? new WordPressOptionTokenStore() : new InMemoryTokenStore();
if (isset($script['token'])) {
    $tokens->saveToken($script['token']);
}
$transport = $wordpress ? Client::defaultTransport() : new CurlTransport();
if ($wordpress && !$transport instanceof WordPressTransport) {
    throw new RuntimeException('WordPress is loaded: the default transport must be WordPress\'s');
}
if (isset($script['balance_cache_file'])) {
    $options['balance_cache'] = new JsonFileBalanceCache($script['balance_cache_file']);
} elseif ($wordpress) {
    $options['balance_cache'] = new WordPressTransientBalanceCache();
}
$client = new Client($script['base_url'], $tokens, $transport, $options);

$results = [];
foreach ($script['ops'] as $step) {
    try {
        $answer = match ($step['op']) {
            'etag' => $client->balanceEtag(),
            'last_remaining' => $client->lastRemaining(),
            'debug' => print_r($client, true) . print_r($tokens, true),
            default => $client->{$step['op']}(...($step['args'] ?? [])),
        };
        $results[] = ['ok' => $answer];
    } catch (ApiException $error) {
        $results[] = ['error' => [
            'class' => get_class($error),
            'status' => $error->getStatus(),
            'code' => $error->getErrorCode(),
            'problem' => $error->getProblem(),
            'request_id' => $error->getRequestId(),
            'remaining' => $error instanceof InsufficientCredits ? $error->getRemaining() : null,
            'retry_after' => $error instanceof Unavailable ? $error->getRetryAfter() : null,
            'message' => $error->getMessage(),
        ]];
    }
}
echo json_encode(
    ['results' => $results, 'sleeps' => $sleeps, 'token' => $tokens->getToken()],
    JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES,
), "\n";
