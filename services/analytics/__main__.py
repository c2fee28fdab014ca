from services.analytics.app import service

service.run()
