<?php

declare(strict_types=1);

namespace AiCredits;

/** The balance and its ETag in a WordPress transient (a day by default), shared by page loads. */
final class WordPressTransientBalanceCache implements BalanceCache
{
    public function __construct(
        private readonly string $transient = 'ai_credits_balance',
        private readonly int $seconds = 86400,
    ) {
    }

    public function load(): ?array
    {
        $entry = \get_transient($this->transient);
        if (!is_array($entry) || !is_string($entry['etag'] ?? null) || !is_array($entry['balance'] ?? null)) {
            return null;
        }
        return ['etag' => $entry['etag'], 'balance' => $entry['balance']];
    }

    public function save(string $etag, array $balance): void
    {
        \set_transient($this->transient, ['etag' => $etag, 'balance' => $balance], $this->seconds);
    }

    public function clear(): void
    {
        \delete_transient($this->transient);
    }
}
