<?php

declare(strict_types=1);

namespace AiCredits;

/**
 * The last balance read and its ETag, so that the next balance() (the refresh icon, on another
 * page load) sends If-None-Match and a 304 answers it. Holds no secret.
 */
interface BalanceCache
{
    /** @return array{etag: string, balance: array<string, mixed>}|null */
    public function load(): ?array;

    /** @param array<string, mixed> $balance */
    public function save(string $etag, array $balance): void;

    public function clear(): void;
}
