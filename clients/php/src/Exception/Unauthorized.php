<?php

declare(strict_types=1);

namespace AiCredits\Exception;

/** 401 unauthorized: the activation token is missing, unknown, rotated or deactivated. */
class Unauthorized extends ApiException
{
}
