<?php

declare(strict_types=1);

namespace AiCredits\Exception;

/** 403 license_expired: the license has expired. */
class LicenseExpired extends ApiException
{
}
