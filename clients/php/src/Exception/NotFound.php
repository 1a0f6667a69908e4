<?php

declare(strict_types=1);

namespace AiCredits\Exception;

/** 404 not_found: no such license key, hold... */
class NotFound extends ApiException
{
}
