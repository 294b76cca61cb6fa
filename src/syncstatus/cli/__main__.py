from syncstatus.cli.app import app

app()
