global using Shoal.Testing;
