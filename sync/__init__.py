"""phala-sync: keeps a SQL history of a Phala Cloud fleet."""
