<?php

declare(strict_types=1);

namespace AiCredits;

/** The default cache: as long as the Client object lives. */
final class InMemoryBalanceCache implements BalanceCache
{
    /** @var array{etag: string, balance: array<string, mixed>}|null */
    private ?array $entry = null;

    public function load(): ?array
    {
        return $this->entry;
    }

    public function save(string $etag, array $balance): void
    {
        $this->entry = ['etag' => $etag, 'balance' => $balance];
    }

    public function clear(): void
    {
        $this->entry = null;
    }
}
