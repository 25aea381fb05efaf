<?php
// Write a row on the primary, read it back (from the replica when it has caught up, else
// from the primary), and say which PHP replica served the request.
declare(strict_types=1);
require __DIR__ . '/db.php';

header('Content-Type: text/plain; charset=utf-8');
header('Cache-Control: no-store');

$replica = replica_name();
$primary = env('DB_WRITE_HOST', 'db-primary');
$readHosts = array_values(array_filter(array_map('trim', explode(',', env('DB_READ_HOSTS', '')))));

try {
    $write = db_connect($primary);
    $token = bin2hex(random_bytes(8));
    $stmt = $write->prepare('INSERT INTO visits (replica, token) VALUES (?, ?)');
    $stmt->bind_param('ss', $replica, $token);
    $stmt->execute();
    $id = (int) $write->insert_id;
} catch (Throwable $e) {
    http_response_code(503);
    echo "error: served by {$replica}; cannot write to {$primary}: {$e->getMessage()}\n";
    exit;
}

/** The token stored under $id on $db, or null. */
function read_token(mysqli $db, int $id): ?string
{
    $stmt = $db->prepare('SELECT token FROM visits WHERE id = ?');
    $stmt->bind_param('i', $id);
    $stmt->execute();
    $row = $stmt->get_result()->fetch_assoc();
    return $row === null ? null : (string) $row['token'];
}

$readFrom = null;
foreach ($readHosts as $host) {
    try {
        $db = db_connect($host, 1);
        // Replication is asynchronous: give the replica a moment to catch up.
        for ($try = 0; $try < 10 && $readFrom === null; $try++) {
            if (read_token($db, $id) === $token) {
                $readFrom = $host;
            } else {
                usleep(20000);
            }
        }
        $db->close();
    } catch (Throwable $e) {
        // replica down or lagging: fall back to the next one, then to the primary
    }
    if ($readFrom !== null) {
        break;
    }
}
if ($readFrom === null) {
    try {
        if (read_token($write, $id) === $token) {
            $readFrom = $primary;
        }
    } catch (Throwable $e) {
    }
}
if ($readFrom === null) {
    http_response_code(500);
    echo "error: served by {$replica}; wrote visit {$id} on {$primary} but could not read it back\n";
    exit;
}
echo "served by {$replica}; wrote visit {$id} on {$primary}; read it back from {$readFrom}\n";
