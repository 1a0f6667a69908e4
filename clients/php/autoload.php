<?php

declare(strict_types=1);

/*
 * For a drop-in copy without Composer: `require __DIR__ . '/clients/php/autoload.php';`
 * loads the AiCredits\ classes from src/ (PSR-4, as composer.json declares).
 */

spl_autoload_register(static function (string $class): void {
    $prefix = 'AiCredits\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
