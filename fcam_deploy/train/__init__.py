"""fcam_deploy.train"""
