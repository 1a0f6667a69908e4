<?php

declare(strict_types=1);

namespace AiCredits\Exception;

/** 422 validation_error; getErrors() lists {loc, type, msg} per field. */
class ValidationFailed extends ApiException
{
    /** @return list<array<string, mixed>> */
    public function getErrors(): array
    {
        $errors = $this->getMember('errors');
        return is_array($errors) ? array_values($errors) : [];
    }
}
