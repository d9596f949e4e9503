"""Router: applies the county's duty list (权责清单) to route each event to its units."""
