<?php

declare(strict_types=1);

namespace AiCredits\Exception;

/** 402 insufficient_credits: nothing was charged; getRemaining() is what the site has left. */
class InsufficientCredits extends ApiException
{
    public function getRemaining(): ?int
    {
        $remaining = $this->getMember('remaining');
        return is_int($remaining) ? $remaining : null;
    }
}
