<?php
// Health of this PHP replica: PHP answers and the primary database accepts a query.
declare(strict_types=1);
require __DIR__ . '/db.php';

header('Content-Type: text/plain; charset=utf-8');
header('Cache-Control: no-store');
try {
    db_connect(env('DB_WRITE_HOST', 'db-primary'), 1)->query('SELECT 1');
    echo "ok\n";
} catch (Throwable $e) {
    http_response_code(503);
    echo "db unavailable: {$e->getMessage()}\n";
}
