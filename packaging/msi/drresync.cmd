@rem drresync: druvaa resync (MSI has no links; the Linux packages link drresync to druvaa instead).
@"%~dp0druvaa.exe" resync %*
@exit /b %errorlevel%
