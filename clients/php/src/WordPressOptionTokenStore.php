<?php

declare(strict_types=1);

namespace AiCredits;

/** The token in a WordPress option (not autoloaded); a network activation may pass site-option functions. */
final class WordPressOptionTokenStore implements TokenStore
{
    public function __construct(
        private readonly string $option = 'ai_credits_activation_token',
        private readonly bool $network = false,
    ) {
    }

    public function getToken(): ?string
    {
        $value = $this->network ? \get_site_option($this->option, null) : \get_option($this->option, null);
        return is_string($value) && $value !== '' ? $value : null;
    }

    public function saveToken(#[\SensitiveParameter] string $token): void
    {
        if ($this->network) {
            \update_site_option($this->option, $token);
        } else {
            \update_option($this->option, $token, false);
        }
    }

    public function clearToken(): void
    {
        $this->network ? \delete_site_option($this->option) : \delete_option($this->option);
    }
}
