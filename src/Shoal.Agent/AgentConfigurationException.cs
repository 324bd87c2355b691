namespace Shoal.Agent;

/// <summary>
/// The agent cannot run as configured: no identity and no token, a rejected provisioning token,
/// an invalid option. The message is meant to be shown to the operator as is.
/// </summary>
public sealed class AgentConfigurationException : Exception
{
    public AgentConfigurationException(string message) : base(message)
    {
    }

    public AgentConfigurationException(string message, Exception innerException) : base(message, innerException)
    {
    }

    public AgentConfigurationException()
    {
    }
}
