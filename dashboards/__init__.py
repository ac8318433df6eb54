"""The dashboards service: a GraphQL API (with a query builder and exports) and a web dashboard over the marts."""
