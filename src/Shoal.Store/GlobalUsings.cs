global using Shoal.Core.Model;
