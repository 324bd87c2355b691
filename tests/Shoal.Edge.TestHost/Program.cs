using System.Text.Json;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Edge;

// The edge alone in its own process, over a fixed route table read from a JSON file, so tests can
// measure the edge's own memory. Usage: Shoal.Edge.TestHost <routes.json> [max connections per address].
// Prints "listening <url>".
if (args.Length is < 1 or > 2)
{
    Console.Error.WriteLine("usage: Shoal.Edge.TestHost <routes.json> [max connections per address]");
    return 2;
}

var table = JsonSerializer.Deserialize(File.ReadAllText(args[0]), ShoalJsonContext.Default.RouteTable)
    ?? throw new InvalidDataException("empty route table");
var routes = new RouteTableHolder();
routes.Update(table);
var options = new EdgeOptions { Listen = "127.0.0.1:0" };
if (args.Length > 1) options.MaxConnectionsPerAddress = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.WebHost.UseShoalEdgeKestrel(options);
builder.Services.AddShoalEdge(options, routes);
var app = builder.Build();
app.MapShoalEdge();
await app.StartAsync();
Console.WriteLine("listening " + app.Urls.First());
await app.WaitForShutdownAsync();
return 0;
