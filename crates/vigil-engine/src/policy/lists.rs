//! Named lists of domains or addresses, loaded from files (plain, hosts-file and CIDR formats).
