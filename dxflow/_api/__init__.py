"""The SDK facades: AsyncEngine and its blocking twin Engine, with their collections."""
