<?php

declare(strict_types=1);

namespace AiCredits;

/**
 * Where the activation token lives between requests. The token is a secret (it spends the site's
 * credits): store it where only the site's code can read it, never in logs or the page.
 */
interface TokenStore
{
    public function getToken(): ?string;

    public function saveToken(#[\SensitiveParameter] string $token): void;

    public function clearToken(): void;
}
