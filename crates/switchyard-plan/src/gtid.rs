//! GTID positions and set arithmetic for MySQL and MariaDB.
