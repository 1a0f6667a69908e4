<?php

declare(strict_types=1);

namespace AiCredits;

/** The default store: the token lives as long as the object (persist it yourself, or use WordPressOptionTokenStore). */
final class InMemoryTokenStore implements TokenStore
{
    public function __construct(#[\SensitiveParameter] private ?string $token = null)
    {
    }

    public function getToken(): ?string
    {
        return $this->token;
    }

    public function saveToken(#[\SensitiveParameter] string $token): void
    {
        $this->token = $token;
    }

    public function clearToken(): void
    {
        $this->token = null;
    }

    /** @return array<string, mixed> var_dump/print_r never show the token */
    public function __debugInfo(): array
    {
        return ['token' => $this->token === null ? null : '[redacted]'];
    }
}
