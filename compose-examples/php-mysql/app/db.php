<?php
// Shared by index.php and health.php: connection settings come from the environment.
declare(strict_types=1);

mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

function env(string $name, string $default): string
{
    $value = getenv($name);
    return ($value === false || $value === '') ? $default : $value;
}

function replica_name(): string
{
    return env('REPLICA_NAME', (string) gethostname());
}

/** A connection with short timeouts: a dead database must fail fast, not hang the page. */
function db_connect(string $host, int $timeout = 2): mysqli
{
    $db = mysqli_init();
    $db->options(MYSQLI_OPT_CONNECT_TIMEOUT, $timeout);
    $db->options(MYSQLI_OPT_READ_TIMEOUT, $timeout);
    $db->real_connect($host, env('DB_USER', 'app'), env('DB_PASSWORD', 'app-password'),
        env('DB_NAME', 'app'));
    return $db;
}
