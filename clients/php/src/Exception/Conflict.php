<?php

declare(strict_types=1);

namespace AiCredits\Exception;

/** 409: idempotency_conflict, hold_expired, hold_captured, activation_limit_reached (see getErrorCode()). */
class Conflict extends ApiException
{
}
