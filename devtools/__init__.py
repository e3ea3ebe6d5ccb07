"""Development tools: the local server, the terminal client, the Runtime API emulator, the
Docker-free invoke and token minting. Never part of the deployed function (src/)."""
