"""GridHub's services: one package each; they share only gridhub.kernel and schemas."""
